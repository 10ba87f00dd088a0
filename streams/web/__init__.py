"""The worker's HTTP side: the JSON API, health, metrics and the dashboard, on Faust's web server."""

"""Chaos suite (``make chaos``): the whole pipeline on real processes while workers, the bridge and the broker die."""

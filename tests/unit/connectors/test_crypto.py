from __future__ import annotations

import traceback

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from connectors.crypto import (
    InvalidSecretKey,
    MissingSecretKey,
    TokenCipher,
    UndecryptableToken,
    generate_key,
)

TOKEN = "Atzr|IwEBIPlaintextRefreshToken-do-not-leak"


def _cipher(*keys: str) -> TokenCipher:
    return TokenCipher(SecretStr(",".join(keys)))


def _leaks(exc: BaseException, *secrets: str) -> list[str]:
    rendered = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(vars(exc))]
    return [secret for secret in secrets for text in rendered if secret in text]


def test_round_trip_returns_the_token_as_a_secret() -> None:
    cipher = _cipher(generate_key())

    ciphertext = cipher.encrypt(SecretStr(TOKEN))
    plain = cipher.decrypt(ciphertext)

    assert isinstance(plain, SecretStr)
    assert plain.get_secret_value() == TOKEN
    assert TOKEN not in ciphertext
    assert TOKEN not in repr(plain)


def test_each_encryption_is_different() -> None:
    cipher = _cipher(generate_key())

    assert cipher.encrypt(SecretStr(TOKEN)) != cipher.encrypt(SecretStr(TOKEN))


def test_old_key_still_decrypts_after_a_new_key_is_put_first() -> None:
    old, new = generate_key(), generate_key()
    written_before = _cipher(old).encrypt(SecretStr(TOKEN))

    rotated = _cipher(new, old)
    written_after = rotated.encrypt(SecretStr(TOKEN))

    assert rotated.key_count == 2
    assert rotated.decrypt(written_before).get_secret_value() == TOKEN
    # The first key encrypts: the new ciphertext needs the new key, the old key alone cannot read it.
    assert _cipher(new).decrypt(written_after).get_secret_value() == TOKEN
    with pytest.raises(UndecryptableToken):
        _cipher(old).decrypt(written_after)


def test_rotate_reencrypts_under_the_first_key() -> None:
    old, new = generate_key(), generate_key()
    written = _cipher(old).encrypt(SecretStr(TOKEN))

    rewritten = _cipher(new, old).rotate(written)

    assert _cipher(new).decrypt(rewritten).get_secret_value() == TOKEN
    with pytest.raises(UndecryptableToken):
        _cipher(old).decrypt(rewritten)


def test_wrong_key_raises_undecryptable_naming_the_seller_but_no_secret() -> None:
    key, other = generate_key(), generate_key()
    ciphertext = _cipher(key).encrypt(SecretStr(TOKEN))

    with pytest.raises(UndecryptableToken) as caught:
        _cipher(other).decrypt(ciphertext, seller_id="A2SELLER")

    assert "A2SELLER" in str(caught.value)
    assert "SOLICIT_SECRET_KEY" in str(caught.value)
    assert _leaks(caught.value, TOKEN, key, other, ciphertext) == []


@pytest.mark.parametrize("garbage", ["", "not-a-fernet-token", "gAAAAA" + "A" * 80, "ünïcödé"])
def test_garbage_ciphertext_is_undecryptable(garbage: str) -> None:
    with pytest.raises(UndecryptableToken):
        _cipher(generate_key()).decrypt(garbage)


@pytest.mark.parametrize("setting", ["", " ", ",", " , "])
def test_missing_key_says_how_to_make_one(setting: str) -> None:
    with pytest.raises(MissingSecretKey) as caught:
        TokenCipher(SecretStr(setting))

    message = str(caught.value)
    assert "SOLICIT_SECRET_KEY" in message
    assert "solicit sellers new-key" in message
    assert "Fernet.generate_key()" in message


@pytest.mark.parametrize("bad", ["short", "x" * 44, "A" * 42 + "==", "ünïcödé-key"])
def test_malformed_key_names_its_position_but_not_its_value(bad: str) -> None:
    good = generate_key()

    with pytest.raises(InvalidSecretKey) as caught:
        _cipher(good, bad)

    assert (caught.value.position, caught.value.count) == (2, 2)
    assert "key 2 of 2" in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert _leaks(caught.value, bad, good) == []


def test_repr_shows_no_key() -> None:
    key = generate_key()

    assert repr(_cipher(key)) == "TokenCipher(keys=1)"


def test_generated_keys_are_valid_and_fresh() -> None:
    first, second = generate_key(), generate_key()

    assert first != second
    Fernet(first)  # raises if the key is not a valid Fernet key

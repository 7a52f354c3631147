"""Counts and articles in messages (issue 17: "1 molecules", "a 'images' run")."""

from polyvae.wording import article, plural


def test_plural_agrees_with_the_count():
    assert plural(1, "molecule") == "1 molecule"
    assert plural(0, "molecule") == "0 molecules"
    assert plural(2000, "item") == "2,000 items"
    assert plural(3, "analysis", "analyses") == "3 analyses"


def test_article_follows_the_first_letter():
    assert f"{article('images')} 'images' run" == "an 'images' run"
    assert f"{article('molecules')} 'molecules' run" == "a 'molecules' run"

"""app.core.jinja.environment: one cached environment per folder and options, escaping as asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError

from app.core.jinja import environment

MARKUP = "<b>&</b>"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("page.html", "mail.txt"):
        (tmp_path / name).write_text("{{ value }}{% if true %}\n  x{% endif %}\n")
    return tmp_path


def test_the_same_folder_and_options_give_the_same_environment(folder: Path) -> None:
    # given one call, when the same folder and options are asked for again
    first = environment(folder, autoescape=True)
    # then it is the very same object (templates parsed once), and other options another one
    assert environment(folder, autoescape=True) is first
    assert environment(folder, autoescape=False) is not first


def test_autoescape_every_template_none_or_by_extension(folder: Path) -> None:
    # given the three ways to escape, when each renders markup
    def rendered(autoescape: bool | tuple[str, ...], name: str) -> str:
        return environment(folder, autoescape=autoescape).get_template(name).render(value=MARKUP)

    # then True escapes every template, False none, ("html",) the .html ones only
    assert rendered(True, "mail.txt").startswith("&lt;b&gt;&amp;&lt;/b&gt;")
    assert rendered(False, "page.html").startswith(MARKUP)
    assert rendered(("html",), "page.html").startswith("&lt;b&gt;")
    assert rendered(("html",), "mail.txt").startswith(MARKUP)


def test_strict_refuses_undefined_names_and_trim_blocks_trims(folder: Path) -> None:
    # given a strict, trimming environment, when a template misses a name or has a block tag
    env = environment(folder, autoescape=False, strict=True, trim_blocks=True,
                      keep_trailing_newline=True)
    # then the name is an error, and the block tags leave no newline behind them
    with pytest.raises(UndefinedError):
        env.get_template("mail.txt").render()
    assert env.get_template("mail.txt").render(value="v") == "v  x"
    lax = environment(folder, autoescape=False)
    assert lax.get_template("mail.txt").render() == "\n  x"

"""Loading an edition folder: what is accepted, and the errors for what is not."""

from __future__ import annotations

import datetime as dt

import pytest

from mailer.edition import load_edition
from mailer.errors import InputError


def test_sections_are_ordered_by_file_name_and_only_md_files_count(make_edition):
    root = make_edition({"02-b.md": "B", "01-a.md": "A", "notes.txt": "x", "10-c.md": "C"})
    edition = load_edition(root)
    assert [s.name for s in edition.sections] == ["01-a.md", "02-b.md", "10-c.md"]


def test_front_matter_is_parsed_and_body_line_points_past_it(make_edition):
    root = make_edition({"01-a.md": "---\ntitle: Alert\nkind: alert\n---\nFirst line of body\n"})
    section = load_edition(root).sections[0]
    assert (section.title, section.kind) == ("Alert", "alert")
    assert section.body == "First line of body\n"
    assert section.body_line == 5


def test_kind_defaults_to_article(make_edition):
    assert load_edition(make_edition()).sections[0].kind == "article"


def test_edition_metadata_is_read(make_edition):
    root = make_edition(send_at="2025-07-15T09:00:00+01:00")
    edition = load_edition(root)
    assert edition.date == dt.date(2025, 7, 1)
    assert edition.send_at.utcoffset() == dt.timedelta(hours=1)
    assert edition.template == "newsletter"
    assert edition.slug == "2025-01-test"


@pytest.mark.parametrize(
    ("files", "meta", "expected"),
    [
        ({"01-a.md": "---\nkind: poem\n---\nx"}, {}, "unknown kind 'poem'"),
        ({"01-a.md": "---\ntitle: [unclosed\n---\nx"}, {}, "invalid front matter"),
        ({"01-a.md": "---\ntitle: x\nbody"}, {}, "never closed"),
        ({"01-a.md": "---\ncolour: red\n---\nx"}, {}, "unknown front matter key 'colour'"),
        ({"01-a.md": "---\nbutton_text: Go\n---\nx"}, {}, "button_text and button_url"),
        ({}, {"send_at": "2025-07-15 09:00"}, "send_at must be an RFC 3339 time"),
        ({}, {"date": "July"}, "date must be YYYY-MM-DD"),
        ({}, {"subjet": "typo"}, "unknown key 'subjet'"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(make_edition, files, meta, expected):
    root = make_edition(files or None, **meta)
    with pytest.raises(InputError) as info:
        load_edition(root)
    assert expected in str(info.value)
    assert info.value.path is not None


def test_missing_edition_toml_is_an_input_error(tmp_path):
    (tmp_path / "ed").mkdir()
    with pytest.raises(InputError, match=r"edition\.toml is missing"):
        load_edition(tmp_path / "ed")


def test_invalid_toml_reports_the_line(make_edition):
    root = make_edition()
    (root / "edition.toml").write_text('title = "x"\nsubject = \n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_edition(root)
    assert info.value.line == 2


def test_missing_required_key_is_named(make_edition):
    root = make_edition()
    (root / "edition.toml").write_text('title = "x"\nsubject = "y"\ndate = 2025-01-01\n')
    with pytest.raises(InputError, match="missing required key 'preheader'"):
        load_edition(root)


def test_front_matter_error_reports_its_line(make_edition):
    root = make_edition({"01-a.md": "---\ntitle: ok\nkind: [x\n---\nbody"})
    with pytest.raises(InputError) as info:
        load_edition(root)
    assert info.value.line is not None and info.value.line >= 3

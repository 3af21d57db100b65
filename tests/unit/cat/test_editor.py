"""The line editor (pure): keys, events and the screen updates node's readline would write."""

from __future__ import annotations

import pytest

from wsgate.cat.editor import Close, Key, KeyDecoder, LineEditor, Submit, display_width


def typed(editor: LineEditor, *chunks: str) -> list[Submit | Close]:
    events: list[Submit | Close] = []
    for chunk in chunks:
        events += editor.feed(chunk)
    return events


def test_echo_at_the_end_and_submit() -> None:
    editor = LineEditor()
    assert typed(editor, "hi") == []
    assert editor.data_to_send() == "hi"
    assert typed(editor, "\r") == [Submit("hi")]
    assert editor.data_to_send() == "\r\n"
    assert typed(editor, "\n") == []  # "\r\n" is one Enter
    assert typed(editor, "x\n") == [Submit("x")]


def test_insert_in_the_middle_redraws_the_line() -> None:
    editor = LineEditor()
    typed(editor, "ac", "\x1b[D", "b")
    assert editor.line == "abc" and editor.cursor == 2
    assert editor.data_to_send().endswith("\x1b[1G\x1b[0J> abc\x1b[5G")


@pytest.mark.parametrize(
    ("keys", "line", "cursor"),
    [
        ("abc\x7f", "ab", 2),
        ("abc\x01\x04", "bc", 0),  # Ctrl-A, then Ctrl-D deletes right on a non-empty line
        ("abc\x01\x1b[3~", "bc", 0),
        ("one two\x17", "one ", 4),
        ("one two\x1b[1;5D\x0b", "one ", 4),
        ("one two\x1bb\x15", "two", 0),
        ("abc\x1b[H\x1b[F", "abc", 3),
        ("abc\x02\x02\x06", "abc", 2),
        ("a\tb", "a\tb", 3),
        ("a\x07b", "ab", 2),  # other control keys are ignored
    ],
)
def test_editing_keys(keys: str, line: str, cursor: int) -> None:
    editor = LineEditor()
    assert typed(editor, keys) == []
    assert (editor.line, editor.cursor) == (line, cursor)


def test_ctrl_c_and_ctrl_d_on_an_empty_line_close() -> None:
    assert typed(LineEditor(), "abc\x03") == [Close(Key.INTERRUPT)]
    assert typed(LineEditor(), "\x04") == [Close(Key.EOF)]


def test_history() -> None:
    editor = LineEditor()
    typed(editor, "first\r", "second\r", "second\r", "draft")
    typed(editor, "\x1b[A")
    assert editor.line == "second"
    typed(editor, "\x1b[A")
    assert editor.line == "first"
    typed(editor, "\x1b[A")  # no older line: stays
    assert editor.line == "first"
    typed(editor, "\x1b[B", "\x1b[B")
    assert editor.line == "draft"


def test_escape_sequence_split_across_reads() -> None:
    decoder = KeyDecoder()
    assert decoder.decode("a\x1b") == ["a"]
    assert decoder.decode("[") == []
    assert decoder.decode("Dz") == [Key.LEFT, "z"]


def test_mask_and_refresh() -> None:
    editor = LineEditor("Passphrase: ", mask="*")
    typed(editor, "s3")
    assert editor.data_to_send() == "**"
    assert editor.refresh() == "\x1b[1G\x1b[0JPassphrase: **\x1b[15G"


def test_wrapping_lines_move_up_before_redrawing() -> None:
    editor = LineEditor(columns=10)
    typed(editor, "abcdefgh")  # "> " + 8 characters: exactly one row, the cursor wraps
    editor.data_to_send()
    assert editor.prev_rows == 1
    assert editor.refresh() == "\x1b[1A\x1b[1G\x1b[0J> abcdefgh \x1b[1G"


def test_display_width() -> None:
    assert display_width("ab") == 2
    assert display_width("日本") == 4
    assert display_width("e\u0301") == 1

"""``wsgate.conf.lexer``: nginx's tokenizer (nginx-semantics.md section 6.1).

Every input is fed as a whole to one :class:`Lexer`; the statements it yields are compared
with a table. Expected word values were checked against ``nginx -t`` (a word used as a
directive name comes back in ``unknown directive "WORD"``).
"""

from __future__ import annotations

import pytest

from wsgate.conf.build import parse
from wsgate.conf.lexer import End, Lexer
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/test.conf"

Stmt = tuple[tuple[str, ...], str]  # (word texts, what ended it: ";", "{", "}")


def statements(text: str) -> list[Stmt]:
    """All statements of ``text`` up to FILE_DONE (which is not listed)."""
    lexer = Lexer(text, FILE)
    out: list[Stmt] = []
    for _ in range(10_000):
        words, end = lexer.next_statement()
        if end is End.FILE_DONE:
            assert words == []
            return out
        out.append((tuple(w.text for w in words), end.value))
    raise AssertionError("the lexer did not reach the end of the text")


# (id, input, expected statements)
TOKENS: list[tuple[str, str, list[Stmt]]] = [
    ("empty", "", []),
    ("only-space", " \t\r\n \n", []),
    ("one-word", "a;", [(("a",), ";")]),
    ("words", "proxy_pass http://backend;", [(("proxy_pass", "http://backend"), ";")]),
    ("tabs-cr-lf-separate", "a\tb\r\nc\n;", [(("a", "b", "c"), ";")]),
    ("space-before-semicolon", "a b ;", [(("a", "b"), ";")]),
    ("block", "http {\n}\n", [(("http",), "{"), ((), "}")]),
    ("block-no-space", "http{}", [(("http",), "{"), ((), "}")]),
    ("block-with-args", "location / { }", [(("location", "/"), "{"), ((), "}")]),
    (
        "nested",
        "a { b { c 1; } }",
        [(("a",), "{"), (("b",), "{"), (("c", "1"), ";"), ((), "}"), ((), "}")],
    ),
    ("close-brace-inside-word", "a b};", [(("a", "b}"), ";")]),
    # quoting
    ("double-quoted", '"a b" c;', [(("a b", "c"), ";")]),
    ("single-quoted", "'a b' c;", [(("a b", "c"), ";")]),
    ("quoted-then-semicolon", '"a";', [(("a",), ";")]),
    ("quoted-then-brace", 'a "b"{ }', [(("a", "b"), "{"), ((), "}")]),
    ("empty-single-quotes", "'' close;", [(("", "close"), ";")]),
    ("empty-double-quotes", 'a "";', [(("a", ""), ";")]),
    ("quotes-inside-word-literal", 'a"b"c;', [(('a"b"c',), ";")]),
    ("open-quote-inside-word-literal", 'x"{}', [(('x"',), "{"), ((), "}")]),
    ("double-quote-in-single", "'a\"b';", [(('a"b',), ";")]),
    ("single-quote-in-double", '"a\'b";', [(("a'b",), ";")]),
    ("semicolon-in-quotes", '"a;b{c}";', [(("a;b{c}",), ";")]),
    ("newline-in-quotes", '"a\nb";', [(("a\nb",), ";")]),
    # escapes: \" \' \\ \t \r \n become the character; any other backslash is kept
    ("esc-dquote-unquoted", r"a\"b;", [(('a"b',), ";")]),
    ("esc-squote-unquoted", r"a\'b;", [(("a'b",), ";")]),
    ("esc-backslash", r"a\\b;", [(("a\\b",), ";")]),
    ("esc-tab", r"a\tb;", [(("a\tb",), ";")]),
    ("esc-cr", r"a\rb;", [(("a\rb",), ";")]),
    ("esc-newline", r"a\nb;", [(("a\nb",), ";")]),
    ("esc-dquote-in-dquotes", r'"a\"b";', [(('a"b',), ";")]),
    ("esc-squote-in-squotes", r"'a\'b';", [(("a'b",), ";")]),
    ("esc-backslash-before-close-quote", r'"a\\";', [(("a\\",), ";")]),
    ("esc-tab-in-quotes", r'"a\tb";', [(("a\tb",), ";")]),
    ("kept-backslash-space", r"a\ b;", [(("a\\ b",), ";")]),
    ("kept-backslash-space-quoted", r'"a\ b";', [(("a\\ b",), ";")]),
    ("kept-backslash-other", r"a\qb;", [(("a\\qb",), ";")]),
    ("escaped-semicolon", r"a \;;", [(("a", "\\;"), ";")]),
    ("escaped-brace", r"a \{;", [(("a", "\\{"), ";")]),
    ("escaped-quote-at-start", r"a \"b;", [(("a", '"b'), ";")]),
    # variables: "${" is not a block
    ("braced-variable", "set ${var};", [(("set", "${var}"), ";")]),
    ("braced-variable-inside", "a x${var}y;", [(("a", "x${var}y"), ";")]),
    ("braced-variable-then-block", "${x}{ }", [(("${x}",), "{"), ((), "}")]),
    ("plain-variable-then-block", "map $a $b {}", [(("map", "$a", "$b"), "{"), ((), "}")]),
    ("brace-after-word-is-block", "a x{ }", [(("a", "x"), "{"), ((), "}")]),
    # comments only at the start of a token
    ("comment-line", "# a; b {\nc;", [(("c",), ";")]),
    ("comment-after-statement", "a; # b;\nc;", [(("a",), ";"), (("c",), ";")]),
    ("comment-mid-statement", "a # b;\n c;", [(("a", "c"), ";")]),
    ("hash-inside-word", "a b#c;", [(("a", "b#c"), ";")]),
    ("hash-in-quotes", '"#a" b;', [(("#a", "b"), ";")]),
    ("comment-at-eof-no-newline", "a;\n# end", [(("a",), ";")]),
    ("comment-then-close", "a {\n # x }\n}", [(("a",), "{"), ((), "}")]),
]


@pytest.mark.parametrize(("text", "expected"), [t[1:] for t in TOKENS], ids=[t[0] for t in TOKENS])
def test_tokens(text: str, expected: list[Stmt]) -> None:
    assert statements(text) == expected


def test_quoted_flag_and_word_lines() -> None:
    lexer = Lexer("a\n'b'\n\"\"\nc;", FILE)
    words, end = lexer.next_statement()
    assert end is End.OK
    assert [(w.text, w.quoted, w.line) for w in words] == [
        ("a", False, 1),
        ("b", True, 2),
        ("", True, 3),
        ("c", False, 4),
    ]
    assert lexer.line == 4


def test_lexer_line_is_line_of_terminator() -> None:
    lexer = Lexer("listen\n 80\n default_server\n;\nnext {\n\n}", FILE)
    assert lexer.next_statement()[1] is End.OK
    assert lexer.line == 4
    assert lexer.next_statement()[1] is End.BLOCK_START
    assert lexer.line == 5
    assert lexer.next_statement()[1] is End.BLOCK_DONE
    assert lexer.line == 7


# (id, input, message, line) - the lexer's own errors
LEX_ERRORS: list[tuple[str, str, str, int]] = [
    ("dquote-then-char", '"a"b;', 'unexpected "b"', 1),
    ("squote-then-char", "x 'a'b;", 'unexpected "b"', 1),
    ("quote-then-close-brace", 'a "b"}', 'unexpected "}"', 1),
    ("quote-then-char-line-3", 'a;\nb;\nc "d"e;', 'unexpected "e"', 3),
    ("stray-semicolon", ";", 'unexpected ";"', 1),
    ("stray-semicolon-after-block", "a {\n}\n ;", 'unexpected ";"', 3),
    ("double-semicolon", "a;;", 'unexpected ";"', 1),
    ("stray-open-brace", "a;\n{", 'unexpected "{"', 2),
    ("close-brace-after-words", "a b }", 'unexpected "}"', 1),
    ("close-brace-next-line", "proxy_pass http://x\n}", 'unexpected "}"', 2),
    ("eof-after-words", "a b", 'unexpected end of file, expecting ";" or "}"', 1),
    ("eof-after-words-newline", "a b\n", 'unexpected end of file, expecting ";" or "}"', 2),
    ("eof-after-word-and-comment", "a b # c;\n", 'unexpected end of file, expecting ";" or "}"', 2),
    ("eof-in-dquote", 'a "abc;\n}\n', 'unexpected end of file, expecting ";" or "}"', 3),
    ("eof-in-squote", "a 'abc", 'unexpected end of file, expecting ";" or "}"', 1),
    ("eof-after-backslash", "a \\", 'unexpected end of file, expecting ";" or "}"', 1),
]


@pytest.mark.parametrize(
    ("text", "message", "line"), [e[1:] for e in LEX_ERRORS], ids=[e[0] for e in LEX_ERRORS]
)
def test_lexer_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        statements(text)
    assert (info.value.message, info.value.file, info.value.line) == (message, FILE, line)
    assert str(info.value) == f"{message} in {FILE}:{line}"


# (id, input, message, line) - block structure errors the parser reports from the lexer
PARSE_ERRORS: list[tuple[str, str, str, int]] = [
    ("eof-expecting-brace", "events {}\nhttp {\n", 'unexpected end of file, expecting "}"', 3),
    ("eof-expecting-brace-no-newline", "events {", 'unexpected end of file, expecting "}"', 1),
    (
        "eof-expecting-brace-nested",
        "events {}\nhttp {\n server {\n }\n\n",
        'unexpected end of file, expecting "}"',
        6,
    ),
    (
        "eof-expecting-semicolon",
        "events {}\nhttp {\n server {\n  listen 80",
        'unexpected end of file, expecting ";" or "}"',
        4,
    ),
    ("close-brace-at-top", "events {}\n}\n", 'unexpected "}"', 2),
    ("stray-semicolon-at-top", "events {} ;\n", 'unexpected ";"', 1),
]


@pytest.mark.parametrize(
    ("text", "message", "line"), [e[1:] for e in PARSE_ERRORS], ids=[e[0] for e in PARSE_ERRORS]
)
def test_structure_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse(FILE, text=text)
    assert (info.value.message, info.value.file, info.value.line) == (message, FILE, line)

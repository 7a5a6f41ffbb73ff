"""The tokens file's format, for the server (`server.auth.tokens_file`) and `mis infer`.

One token per line, optionally named: `NAME: TOKEN` (the audit log names the token, never
holds it); a line without a name is named `token-<line number>`. Blank lines and `#` comment
lines, indented or not, are skipped. A token is RFC 6750's token68, which has no `:`. A
malformed line is reported by its number, never by its text: it may be a token with a typo.
"""

from __future__ import annotations

import re
from pathlib import Path

from mis_app.bounded_read import NothingCame, read_at_most

TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MAX_FILE_BYTES = 1024 * 1024  # thousands of tokens; a client never reads more


class MalformedTokens(ValueError):
    """A line that is neither a token, a comment nor blank; the message names its number."""


def parse_named_tokens(text: str) -> list[tuple[str, str]]:
    """The (name, token) pairs of a tokens file, in order."""
    tokens: list[tuple[str, str]] = []
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        name, colon, token = entry.rpartition(":")
        name, token = (name.strip(), token.strip()) if colon else (f"token-{number}", entry)
        if not NAME.fullmatch(name):
            raise MalformedTokens(
                f"has a malformed line {number} (a name is 1 to 64 of A-Z a-z 0-9 ._@-, "
                "then ': ' and the token)"
            )
        if not TOKEN.fullmatch(token):
            raise MalformedTokens(
                f"has a malformed line {number} (a token is one word of A-Z a-z 0-9 -._~+/=)"
            )
        if name in names:
            raise MalformedTokens(f"has a malformed line {number} (the name {name} is taken)")
        names.add(name)
        tokens.append((name, token))
    return tokens


def parse_tokens(text: str) -> list[str]:
    """The tokens of a tokens file, in order, without their names."""
    return [token for _, token in parse_named_tokens(text)]


class TokenFileProblem(Exception):
    """The client cannot take a token from the file; the message says why, never a token."""


def client_token(path: Path) -> tuple[str, int]:
    """The first token of `path` for `mis infer`, and how many it holds."""
    try:
        data = read_at_most(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise TokenFileProblem(f"cannot read the token file {path}: {exc.strerror}") from exc
    except NothingCame as exc:
        raise TokenFileProblem(str(exc)) from exc
    if len(data) > MAX_FILE_BYTES:
        raise TokenFileProblem(f"the token file {path} is over 1 MiB; is it the right file?")
    try:
        tokens = parse_tokens(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TokenFileProblem(f"the token file {path} is not UTF-8 text") from exc
    except MalformedTokens as exc:
        raise TokenFileProblem(f"the token file {path} {exc}") from exc
    if not tokens:
        raise TokenFileProblem(f"the token file {path} holds no token (only blanks or comments)")
    return tokens[0], len(tokens)

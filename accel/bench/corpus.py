"""An offline English text corpus for calibrating text models: real sentences, no download.

    from accel.bench.corpus import english_sentences
    texts = english_sentences(1000, exclude=EVALUATION_SENTENCES)

The sentences come from what every Python install ships: the prose of the Python
reference documentation's help topics (``pydoc_data.topics``) and the docstrings of a fixed
list of standard-library modules. Text is split into sentences at ``.``, ``?`` or ``!``
followed by a capital letter; a sentence is kept when it reads like prose: it starts with a
capital letter, has ``min_words`` to ``max_words`` words, is mostly letters, and contains no
code (no ``()[]{}=<>*_`|\\#@``, no ``>>>``, no dotted names). Duplicates and the ``exclude``
sentences are dropped. The order is deterministic (sorted by a hash of the text, so
sentences from one topic are spread out) and depends only on the Python version's
documentation, never on the machine.

It is technical English (about Python), not a general-domain corpus: good for the
statistics calibration needs (which words occur with which, sentence lengths), not for
measuring accuracy on a task.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterable

STDLIB_MODULES = (
    "abc", "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions",
    "functools", "gzip", "hashlib", "heapq", "html", "http", "inspect", "io", "ipaddress",
    "itertools", "json", "locale", "logging", "mailbox", "math", "mimetypes", "operator",
    "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets",
    "selectors", "shelve", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string",
    "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "tokenize", "typing", "unittest", "urllib", "uuid", "warnings", "weakref", "zipfile",
)
"""Standard-library modules whose docstrings (module, classes, functions) add sentences."""

_SPLIT = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
_CODE = re.compile(r"[()\[\]{}=<>*_`|\\#@~^$%]|>>>|\w\.\w|\s-\w|::|\.\.")


def _texts() -> Iterable[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]
    for name in STDLIB_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a module missing from this build (e.g. sqlite3)
            continue
        yield mod.__doc__ or ""
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr, None)
            doc = getattr(obj, "__doc__", None)
            if attr.startswith("_") or not isinstance(doc, str):
                continue
            if getattr(obj, "__module__", None) == mod.__name__:
                yield doc


def _prose(s: str, min_words: int, max_words: int) -> bool:
    words = s.split()
    if not min_words <= len(words) <= max_words or not s[0].isupper() or s[-1] not in ".?!":
        return False
    if _CODE.search(s):
        return False
    letters = sum(c.isalpha() for c in s)
    return letters >= 0.75 * len(s.replace(" ", ""))


def english_sentences(n: int | None = None, *, exclude: Iterable[str] = (),
                      min_words: int = 6, max_words: int = 40) -> list[str]:
    """Up to ``n`` (``None``: all) prose sentences of the corpus, deterministic order."""
    if min_words < 1 or max_words < min_words:
        raise ValueError(f"need 1 <= min_words <= max_words (got {min_words}, {max_words})")
    drop = {" ".join(e.split()).lower() for e in exclude}
    seen: set[str] = set()
    out = []
    for text in _texts():
        for para in re.split(r"\n\s*\n", text):
            flat = " ".join(para.split())
            for s in _SPLIT.split(flat):
                key = s.lower()
                if key in seen or key in drop or not _prose(s, min_words, max_words):
                    continue
                seen.add(key)
                out.append(s)
    out.sort(key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return out if n is None else out[:n]

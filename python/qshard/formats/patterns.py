"""Which weights become uint8 / uint16 / float16: fnmatch patterns as in tensorflowjs_converter."""
from __future__ import annotations

import fnmatch
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from qshard.errors import PatternError

Patterns = Union[None, bool, str, Sequence[str]]
TARGETS = ("uint8", "uint16", "float16")


def _as_list(value: Patterns):
    """None/False: not asked; True or []: a bare flag (fallthrough); else a list of patterns."""
    if value is None or value is False:
        return None
    if value is True:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def resolve(names: Iterable[str], uint8: Patterns = None, uint16: Patterns = None, float16: Patterns = None,
            keep: Patterns = None) -> Dict[str, str]:
    """Map each weight name to the dtype asked for it; names absent from the result stay as stored.

    A dtype given without patterns is the fallthrough: it takes every weight no pattern matched
    (at most one fallthrough). Two dtypes matching one weight is an error. `keep` patterns win.
    """
    names = list(names)
    asked = {"uint8": _as_list(uint8), "uint16": _as_list(uint16), "float16": _as_list(float16)}
    fallthrough = [dtype for dtype, pats in asked.items() if pats == []]
    if len(fallthrough) > 1:
        raise PatternError(f"only one dtype may be given without patterns (it takes every other weight); "
                           f"got {' and '.join(fallthrough)}")
    target: Dict[str, str] = {}
    for dtype, pats in asked.items():
        for pattern in pats or []:
            for name in fnmatch.filter(names, pattern):
                if name in target and target[name] != dtype:
                    raise PatternError(f"weight {name!r} matches both {target[name]} and {dtype} "
                                       f"(pattern {pattern!r}); give it one dtype")
                target[name] = dtype
    if fallthrough:
        for name in names:
            target.setdefault(name, fallthrough[0])
    kept = _as_list(keep) or []
    for pattern in kept:
        for name in fnmatch.filter(names, pattern):
            target.pop(name, None)
    return target


def split_list(text: str) -> List[str]:
    """tensorflowjs_converter's comma list ('conv/*,dense/*') as its patterns. A comma inside a
    bracket class is part of its pattern, so 'block[,]1/*' still addresses a name holding a comma."""
    out, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "[":
            # fnmatch's class: a ']' right after '[' or '[!' is literal; an unclosed '[' is literal.
            j = i + 1 + (text[i + 1:i + 2] == "!")
            j = text.find("]", j + (text[j:j + 1] == "]"))
            if j >= 0:
                i = j
        elif text[i] == ",":
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    if "" in out:
        raise PatternError(f"{text!r}: an empty pattern in a comma list (write a literal comma as [,])")
    return out


def unmatched(names: Iterable[str], *pattern_lists: Optional[Sequence[str]]):
    """Patterns (from the given lists) that match no weight: usually a typo worth a warning."""
    names = list(names)
    return [p for pats in pattern_lists for p in (_as_list(pats) or []) if not fnmatch.filter(names, p)]


def check_matched(names: Sequence[str], source: str, allow: bool, **flags: Patterns) -> List[str]:
    """The patterns that match no weight, as 'PATTERN (--flag)'; unless `allow`, a PatternError
    naming them: a pattern that matches nothing is a typo, and the model written would not be
    what was asked."""
    missing: List[Tuple[str, str]] = [(flag, p) for flag, pats in flags.items() for p in unmatched(names, pats)]
    if missing and not allow:
        listed = ", ".join(f"{p!r} (--{flag})" for flag, p in missing)
        sample = ", ".join(repr(n) for n in list(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise PatternError(f"{source}: {'pattern' if len(missing) == 1 else 'patterns'} {listed} "
                           f"{'matches' if len(missing) == 1 else 'match'} no weight; nothing written. Its "
                           f"weights are named like {sample or '(none)'} (qshard inspect lists them); "
                           f"--allow-unmatched (allow_unmatched=True) writes anyway")
    return [p for _, p in missing]


def explicitly_matched(names: Iterable[str], *pattern_args: Patterns) -> set:
    """Names matched by a pattern (not merely by a fallthrough flag)."""
    names = list(names)
    return {n for arg in pattern_args for p in (_as_list(arg) or []) for n in fnmatch.filter(names, p)}

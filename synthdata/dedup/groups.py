"""Duplicate groups without chaining: a near-duplicate joins a group only when it was confirmed against the
group's representative itself. Union-find would let one weak pair fold a whole neighbourhood (A~B and B~C
put A and C together though nobody compared them, or they were compared and found distinct).

Exact duplicates are the same image, so they are merged first (transitively); near pairs then link the
exact classes. The image seen first keeps its place as representative, so re-ingesting a drop never
changes which copy is kept.

A copy whose search found only other copies of its original (an image with several copies: they tie on every
hash, and the partner cap keeps the first by id) would be kept apart, alone or at the head of a group of its
own. :func:`representative_checks` names what to compare then: the representatives of two groups that a
confirmed pair links; :func:`join_linked_groups` has them confirmed and regroups. Confirmed, that pair is a
pair like any other, and the later representative joins the earlier on its own evidence against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd


def _edges(pairs: pd.DataFrame | Iterable | None) -> list[tuple[str, str, int, float]]:
    """(a, b, distance, evidence) from a DataFrame with a, b[, distance][, evidence] or an iterable of
    (a, b[, distance]). ``evidence`` (lower = stronger, e.g. a copy distance) defaults to the distance."""
    if pairs is None:
        return []
    if isinstance(pairs, pd.DataFrame):
        dist = pairs["distance"] if "distance" in pairs else [0] * len(pairs)
        evidence = pairs["evidence"] if "evidence" in pairs else dist
        rows = zip(pairs["a"], pairs["b"], dist, evidence)
    else:
        rows = ((p[0], p[1], p[2] if len(p) > 2 else 0, p[2] if len(p) > 2 else 0) for p in pairs)
    return [(str(a), str(b), int(d), float(e)) for a, b, d, e in rows]


def group_duplicates(
    order: Sequence[str],
    exact_pairs: pd.DataFrame | Iterable | None,
    near_pairs: pd.DataFrame | Iterable | None,
) -> pd.DataFrame:
    """Duplicate groups as one row per non-representative member, in first-seen order.

    Columns ``representative, member, kind ('exact'|'near'), distance, evidence``. Exact pairs merge
    transitively (they are one image); the class's first-seen member stands for it. Then classes are
    visited in first-seen order: a class with a near pair to an existing representative joins it (the
    strongest such pair: lowest evidence, then the earliest representative), otherwise it becomes a
    representative. A class linked only to members of a group starts its own group. Exact members of a
    class that joins a group point at that group's representative with kind 'exact'.
    """
    rank = {image_id: i for i, image_id in enumerate(order)}
    exact, near = _edges(exact_pairs), _edges(near_pairs)
    unknown = {x for a, b, *_ in exact + near for x in (a, b)} - rank.keys()
    if unknown:
        raise ValueError(f"pairs mention images missing from order: {sorted(unknown)[:5]}")

    parent = {x: x for a, b, *_ in exact for x in (a, b)}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees shallow
            x = parent[x]
        return x

    for a, b, *_ in exact:
        ra, rb = find(a), find(b)
        if ra != rb:  # union toward the earlier-seen root: each root is its class's first-seen member
            parent[max(ra, rb, key=rank.__getitem__)] = min(ra, rb, key=rank.__getitem__)

    links: dict[str, list[tuple[float, int, str, int]]] = {}
    for a, b, dist, evidence in near:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        early, late = sorted((ra, rb), key=rank.__getitem__)
        links.setdefault(late, []).append((evidence, rank[early], early, dist))

    head: dict[str, str] = {}  # class root -> representative
    rows = []
    for root in sorted({find(x) for x in parent} | links.keys(), key=rank.__getitem__):
        joined = sorted(link for link in links.get(root, []) if head.get(link[2]) == link[2])
        if joined:
            evidence, _, rep, dist = joined[0]
            head[root] = rep
            rows.append((rep, root, "near", dist, evidence, rank[root]))
        else:
            head[root] = root
    for x in parent:
        if find(x) != x:
            rows.append((head[find(x)], x, "exact", 0, 0.0, rank[x]))
    frame = pd.DataFrame(rows, columns=["representative", "member", "kind", "distance", "evidence", "_rank"])
    frame = frame.sort_values(["_rank"]).drop(columns="_rank").reset_index(drop=True)
    return frame.astype({"distance": "int64", "evidence": "float64"})


def representative_checks(
    order: Sequence[str], near_pairs: pd.DataFrame | Iterable | None, groups: pd.DataFrame
) -> list[tuple[str, str]]:
    """Pairs of representatives to compare so that an image is not kept apart for want of a pair with a
    representative: for each near pair whose images ended in two groups of ``groups`` (an image that stands
    alone is a group of one), the two groups' representatives, the earlier first."""
    rank = {image_id: i for i, image_id in enumerate(order)}
    head = dict(zip(groups["member"].astype(str), groups["representative"].astype(str)))
    checks: set[tuple[str, str]] = set()
    for a, b, *_ in _edges(near_pairs):
        ra, rb = head.get(a, a), head.get(b, b)
        if ra != rb:
            checks.add((ra, rb) if rank[ra] < rank[rb] else (rb, ra))
    return sorted(checks, key=lambda pair: (rank[pair[1]], rank[pair[0]]))


class LinkedGroups(NamedTuple):
    """:func:`join_linked_groups`' result."""

    groups: pd.DataFrame  # as group_duplicates
    near_pairs: pd.DataFrame  # the near pairs given, plus the confirmed representative pairs
    checked: int  # representative pairs compared
    joined: int  # of which confirmed


def join_linked_groups(
    order: Sequence[str], exact_pairs: pd.DataFrame | Iterable | None, near_pairs: pd.DataFrame,
    confirm: Callable[[list[tuple[str, str]]], pd.DataFrame], eligible: Callable[[tuple[str, str]], bool] | None = None,
) -> LinkedGroups:  # fmt: skip
    """:func:`group_duplicates`, then the :func:`representative_checks` (those ``eligible`` says) given to
    ``confirm``, which returns the confirmed ones as near-pair rows (``a, b, distance, evidence``). Each joins
    the later group to the earlier one, as if the search had paired them, and leaves the members that group
    led apart (their pairs were with it), to be compared with the new representative in turn (no chaining:
    each is confirmed against it): so again, until nothing new is confirmed."""
    groups, asked, joined = group_duplicates(order, exact_pairs, near_pairs), set(), 0
    while True:
        checks = [pair for pair in representative_checks(order, near_pairs, groups)
                  if pair not in asked and (eligible is None or eligible(pair))]  # fmt: skip
        if not checks:
            break
        asked.update(checks)
        found = confirm(checks)
        if not len(found):
            break
        joined += len(found)
        near_pairs = pd.concat([near_pairs, found], ignore_index=True)
        groups = group_duplicates(order, exact_pairs, near_pairs)
    return LinkedGroups(groups, near_pairs, len(asked), joined)


def group_sizes(groups: pd.DataFrame) -> tuple[dict[int, int], int]:
    """How many groups have each size (representative included) and the largest size (1 when none)."""
    if groups.empty:
        return {}, 1
    sizes = groups.groupby("representative").size().to_numpy() + 1
    values, counts = np.unique(sizes, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist())), int(sizes.max())

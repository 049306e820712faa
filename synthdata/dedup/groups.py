"""Duplicate groups: union-find over exact and confirmed near pairs; the image seen first keeps its place as
the group's representative, so re-ingesting a drop never changes which copy is kept."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence

import pandas as pd


def _edges(pairs: pd.DataFrame | Iterable | None, kind: str) -> list[tuple[str, str, str, int]]:
    """(a, b, kind, distance) from a DataFrame with a, b[, distance] or an iterable of (a, b[, distance])."""
    if pairs is None:
        return []
    if isinstance(pairs, pd.DataFrame):
        dist = pairs["distance"] if "distance" in pairs else [0] * len(pairs)
        rows = zip(pairs["a"], pairs["b"], dist)
    else:
        rows = ((p[0], p[1], p[2] if len(p) > 2 else 0) for p in pairs)
    return [(str(a), str(b), kind, int(d)) for a, b, d in rows]


def group_duplicates(
    order: Sequence[str],
    exact_pairs: pd.DataFrame | Iterable | None,
    near_pairs: pd.DataFrame | Iterable | None,
) -> pd.DataFrame:
    """Transitive duplicate groups: one row per non-representative member.

    Columns ``representative, member, kind ('exact'|'near'), distance``. The representative is the group
    member that comes first in ``order`` (first seen wins, so re-ingesting a drop never changes which copy
    is kept). Each member carries the edge that links it on a shortest path from the representative,
    exact edges preferred: a direct link to the representative when there is one.
    """
    rank = {image_id: i for i, image_id in enumerate(order)}
    edges = _edges(exact_pairs, "exact") + _edges(near_pairs, "near")
    unknown = {x for a, b, _, _ in edges for x in (a, b)} - rank.keys()
    if unknown:
        raise ValueError(f"pairs mention images missing from order: {sorted(unknown)[:5]}")

    parent = {x: x for a, b, _, _ in edges for x in (a, b)}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees shallow
            x = parent[x]
        return x

    adjacency: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
    for a, b, kind, dist in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            # Union toward the earlier-seen root so each root is its component's first-seen member.
            if rank[ra] < rank[rb]:
                parent[rb] = ra
            else:
                parent[ra] = rb
        key = (0 if kind == "exact" else 1, dist)
        adjacency[a].append((*key, b, kind))
        adjacency[b].append((*key, a, kind))

    rows = []
    for rep in sorted({find(x) for x in parent}, key=rank.__getitem__):
        # BFS from the representative; neighbours sorted so exact / closer edges claim members first.
        seen, queue = {rep}, deque([rep])
        while queue:
            node = queue.popleft()
            for _, dist, other, kind in sorted(adjacency[node]):
                if other not in seen:
                    seen.add(other)
                    queue.append(other)
                    rows.append((rep, other, kind, dist, rank[other]))
    frame = pd.DataFrame(rows, columns=["representative", "member", "kind", "distance", "_rank"])
    frame = frame.sort_values(["_rank"]).drop(columns="_rank").reset_index(drop=True)
    return frame.astype({"distance": "int64"})

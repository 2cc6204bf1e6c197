"""Tree drawing for a depth-first list: the box-drawing prefixes a file manager would show."""
from __future__ import annotations


def tree_prefixes(depths: list[int]) -> list[str]:
    """For nodes listed depth-first with their depths, the '├─ ' / '└─ ' / '│  ' prefix of each.

    A node is its parent's last child when no later node at its depth comes
    before the list climbs back above it; ancestors that were last children
    leave a blank column instead of a vertical line.
    """
    last = [_is_last(depths, i) for i in range(len(depths))]
    prefixes, open_columns = [], []  # open_columns[d]: does depth d still have siblings to come?
    for depth, is_last in zip(depths, last):
        del open_columns[depth:]
        if depth == 0:
            prefixes.append("")
        else:
            rails = "".join("│  " if more else "   " for more in open_columns[1:depth])
            prefixes.append(rails + ("└─ " if is_last else "├─ "))
        open_columns.extend([False] * (depth + 1 - len(open_columns)))
        open_columns[depth] = not is_last
    return prefixes


def _is_last(depths: list[int], i: int) -> bool:
    for later in depths[i + 1:]:
        if later < depths[i]:
            return True
        if later == depths[i]:
            return False
    return True

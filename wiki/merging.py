"""Three-way merge of page texts with merge3."""

from __future__ import annotations

from dataclasses import dataclass

from merge3 import Merge3


@dataclass(frozen=True)
class MergeResult:
    text: str  # the merge; with conflict markers where the two sides disagree
    conflicts: int  # number of conflicting regions

    @property
    def clean(self) -> bool:
        return self.conflicts == 0


def normalise(text: str) -> str:
    """One newline convention and a final newline, so merges and diffs line up."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


def merge(base: str, mine: str, theirs: str) -> MergeResult:
    """Merge `mine` and `theirs`, both descended from `base`."""
    base, mine, theirs = normalise(base), normalise(mine), normalise(theirs)
    if mine == theirs or theirs == base:
        return MergeResult(mine, 0)
    if mine == base:
        return MergeResult(theirs, 0)
    m = Merge3(base.splitlines(True), mine.splitlines(True), theirs.splitlines(True))
    conflicts = sum(1 for group in m.merge_groups() if group[0] == "conflict")
    lines = m.merge_lines(
        start_marker="<<<<<<< your version",
        mid_marker="=======",
        end_marker=">>>>>>> published version",
    )
    return MergeResult("".join(lines), conflicts)

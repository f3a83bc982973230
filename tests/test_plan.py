"""The extraction plan: a pure function deciding each archive member (DESIGN §5)."""

from __future__ import annotations

import pytest

from hubcache.config import Limits
from hubcache.errors import ArchiveLimitError, UnsafeArchiveError
from hubcache.extract import Member, MemberKind, Step, plan_extraction

F, D = MemberKind.FILE, MemberKind.DIR
LIMITS = Limits(max_model_bytes=1000, max_ratio=100, max_members=10)


def test_tfhub_style_members_are_planned_relative() -> None:
    """'./' is skipped, './x' becomes 'x', directories and files keep their order."""
    members = [Member("./", D), Member("./saved_model.pb", F, 10), Member("./variables/", D),
               Member("./variables/variables.index", F, 5)]  # fmt: skip
    assert plan_extraction(members, LIMITS) == [
        Step("saved_model.pb", F, 10),
        Step("variables", D),
        Step("variables/variables.index", F, 5),
    ]


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (Member("/etc/passwd", F, 1), "absolute path"),
        (Member("../evil", F, 1), "escapes"),
        (Member("a/../../evil", F, 1), "escapes"),
        (Member("link", MemberKind.SYMLINK), "symbolic link"),
        (Member("hard", MemberKind.HARDLINK), "hard link"),
        (Member("dev", MemberKind.CHARDEV), "character device"),
        (Member("blk", MemberKind.BLOCKDEV), "block device"),
        (Member("fifo", MemberKind.FIFO), "FIFO"),
        (Member("sparse", MemberKind.SPARSE, 1), "sparse"),
        (Member("a\x00b", F, 1), "NUL"),
    ],
)
def test_unsafe_members_are_refused(member: Member, reason: str) -> None:
    """Only plain files and directories inside the model directory are ever planned."""
    with pytest.raises(UnsafeArchiveError, match=reason):
        plan_extraction([Member("ok", F, 1), member], LIMITS)


def test_duplicates_and_files_used_as_directories_are_refused() -> None:
    """A second member cannot overwrite or write through an earlier one."""
    with pytest.raises(UnsafeArchiveError, match="twice"):
        plan_extraction([Member("a", F, 1), Member("./a", F, 1)], LIMITS)
    with pytest.raises(UnsafeArchiveError, match="inside file"):
        plan_extraction([Member("a", F, 1), Member("a/b", F, 1)], LIMITS)
    with pytest.raises(UnsafeArchiveError, match="twice"):
        plan_extraction([Member("a/b", F, 1), Member("a", F, 1)], LIMITS)


def test_limits_on_members_and_unpacked_bytes() -> None:
    """Over max_members or max_model_bytes aborts the plan."""
    with pytest.raises(ArchiveLimitError, match="more than 10 members"):
        plan_extraction([Member(f"f{i}", F, 1) for i in range(11)], LIMITS)
    with pytest.raises(ArchiveLimitError, match="more than 1000 bytes"):
        plan_extraction([Member("a", F, 600), Member("b", F, 600)], LIMITS)
    assert len(plan_extraction([Member("a", F, 500), Member("b", F, 500)], LIMITS)) == 2

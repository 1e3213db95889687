"""``tusk.values.frozen`` behaves as ``dataclass(frozen=True)``: the same equality, hashing,
repr, immutability and dataclass helpers, class by class against a stdlib twin."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusk.values import frozen


def twins(slots: bool = False) -> list[tuple[type, type]]:
    """(``@frozen`` class, the same class under ``@dataclass(frozen=True)``) pairs."""
    out = []
    for deco in (frozen(slots=slots), dataclass(frozen=True, slots=slots)):

        @deco
        class Empty:
            pass

        @deco
        class One:
            a: int

        @deco
        class Many:
            """Has a docstring."""

            a: int
            b: str = ""
            c: list[int] = field(default_factory=list, hash=False)
            d: float = field(default=0.0, compare=False)
            e: str = field(default="x", repr=False)
            f: int | None = field(default=None, hash=True, compare=False)

        out.append((Empty, One, Many))
    return list(zip(*out, strict=True))


@pytest.mark.parametrize("slots", [False, True])
def test_frozen_matches_dataclass(slots: bool) -> None:
    (empty, empty_dc), (one, one_dc), (many, many_dc) = twins(slots)
    assert empty() == empty() and hash(empty()) == hash(empty())
    assert repr(empty()).endswith("Empty()") and repr(empty()) == repr(empty_dc())
    assert one(1) == one(1) and one(1) != one(2) and one(1) != one_dc(1)
    assert one(1).__eq__(1) is NotImplemented
    assert hash(one(5)) == hash(one(5))
    assert repr(one(3)) == repr(one_dc(3))
    x, y = many(1, "b", [1], 2.0, "hidden", 7), many(1, "b", [1], 9.0, "hidden", 8)
    assert x == y  # d and f are not compared
    assert many_dc(1, "b", [1], 2.0, "hidden", 7) == many_dc(1, "b", [1], 9.0, "hidden", 8)
    assert x != many(1, "b", [1], 2.0, "other", 7)
    assert x != many(1, "c", [1])
    assert repr(x) == repr(many_dc(1, "b", [1], 2.0, "hidden", 7)) and "hidden" not in repr(x)
    # c (a list) is compared but not hashed, f hashed but not compared: as dataclasses do
    assert hash(many(1, "b", [1], f=7)) == hash(many(1, "b", [2], f=7))
    assert hash(many_dc(1, "b", [1], f=7)) == hash(many_dc(1, "b", [2], f=7))
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.a = 2  # type: ignore[misc]
    z = dataclasses.replace(x, b="z")
    assert z.b == "z" and z.c == [1] and dataclasses.asdict(z)["b"] == "z"
    assert [f.name for f in dataclasses.fields(many)] == ["a", "b", "c", "d", "e", "f"]
    assert copy.deepcopy(x) == x and copy.copy(x) == x
    assert many.__match_args__ == many_dc.__match_args__
    assert many.__doc__ == "Has a docstring." and one.__doc__


@given(st.lists(st.tuples(st.integers(), st.text(max_size=5)), max_size=8))
def test_frozen_eq_and_hash_agree_with_dataclass(rows: list[tuple[int, str]]) -> None:
    many, many_dc = twins()[2]
    mine: list[Any] = [many(a, b) for a, b in rows]
    theirs: list[Any] = [many_dc(a, b) for a, b in rows]
    for i in range(len(rows)):
        for j in range(len(rows)):
            assert (mine[i] == mine[j]) == (theirs[i] == theirs[j])
            if mine[i] == mine[j]:
                assert hash(mine[i]) == hash(mine[j])
    assert len(set(mine)) == len(set(theirs))


def test_tusk_models_pickle() -> None:
    from tusk.pfs.models import RepoInfo
    from tusk.storage.meta.records import CommitRecord

    repo = RepoInfo("images", "", 1.0, 2, ["master"])
    assert pickle.loads(pickle.dumps(repo)) == repo
    assert (
        repr(repo)
        == "RepoInfo(name='images', description='', created_at=1.0, size=2, branches=['master'])"
    )
    commit = CommitRecord("c1", "images", "master", None, b"t", "open", "", 1.0, None, 0, 0, "c1")
    assert pickle.loads(pickle.dumps(commit)) == commit and hash(commit) == hash(copy.copy(commit))
    from tusk.pfs.refs import parse_address

    addr = parse_address("images@master^1:/a/b.txt")  # a slotted one
    assert pickle.loads(pickle.dumps(addr)) == addr and not hasattr(addr, "__dict__")
    assert {addr, copy.copy(addr)} == {addr}

"""The window's arithmetic: pieces in whole rounds over the connections, few requests."""

from __future__ import annotations

import pytest

from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.window import LARGE_PIECE, piece_size, window_bytes

GB = 1024**3


@pytest.mark.parametrize("connections", [1, 4, 8])
@pytest.mark.parametrize("size", [64 * 1024**2, GB, int(1.3 * GB), 10 * GB, 107 * GB])
def test_pieces_come_in_whole_rounds_and_at_most_20_requests_per_gb(
    connections: int, size: int
) -> None:
    budget = ConnectionBudget(connections)
    piece = piece_size(size, budget)
    pieces = -(-size // piece)
    rounds = pieces / connections
    # Every connection has a piece in every round but the last few bytes' (ceil rounding).
    assert pieces > connections * (int(rounds) if rounds >= 2 else 1) - 1
    assert rounds >= 2 or piece == budget.min_slice
    assert abs(rounds - round(rounds)) < 1 / connections + 1e-9
    assert pieces <= max(2 * connections, 20 * size / 1e9)  # requests per (decimal) GB
    assert piece >= budget.min_slice
    assert window_bytes(size, budget) <= (connections + 2) * max(piece, LARGE_PIECE * 3 // 2)


def test_a_large_archive_gets_pieces_of_about_50_mib() -> None:
    piece = piece_size(100 * GB, ConnectionBudget(8))
    assert LARGE_PIECE <= piece < LARGE_PIECE * 1.05

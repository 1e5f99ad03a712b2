"""How large the window of pieces of an install while downloading is: the pieces, the
spill files' bound and which archives get one (plain arithmetic: ``download``'s plan
counts it without loading the transfer)."""

from __future__ import annotations

from medimeta_cli.fetch.connections import ConnectionBudget

#: Archives smaller than this are fetched as archives: their extraction beside the archive
#: costs little disk, and they make too few pieces to spread over connections.
WINDOW_FROM = 64 * 1024 * 1024
#: Pieces of large archives: at most about 20 requests per GB (Zenodo allows 60 a minute).
LARGE_PIECE = 50 * 1024 * 1024


def piece_size(size: int, budget: ConnectionBudget) -> int:
    """The pieces of an archive of ``size`` bytes: a whole number of rounds (a piece per
    connection of the share each) of pieces of about :data:`LARGE_PIECE`, at least two
    rounds, and no smaller than the budget's smallest slice. Whole rounds end together:
    with 2.6 rounds, most connections would sit idle while the last few pieces arrive.
    Fewer than 20 requests per GB either way."""
    share = budget.share
    rounds = max(2, size // (share * LARGE_PIECE))
    return max(budget.min_slice, -(-size // (rounds * share)))


def window_bytes(size: int, budget: ConnectionBudget) -> int:
    """The most spill files hold at once: one piece per connection, one ahead, and the
    piece read last until the next checkpoint."""
    return min(size, (budget.share + 2) * piece_size(size, budget))

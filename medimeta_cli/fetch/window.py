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
    """The pieces of an archive of ``size`` bytes: about two per connection of the share,
    no smaller than the budget's smallest slice, no larger than :data:`LARGE_PIECE`."""
    return max(budget.min_slice, min(LARGE_PIECE, -(-size // (2 * budget.share))))


def window_bytes(size: int, budget: ConnectionBudget) -> int:
    """The most spill files hold at once: one piece per connection, one ahead, and the
    piece read last until the next checkpoint."""
    return min(size, (budget.share + 2) * piece_size(size, budget))

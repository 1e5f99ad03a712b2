"""Fetching archives over HTTP: one :class:`~medimeta_cli.fetch.result.Transfer` interface.

- ``answers``: a range request opened and the server's answer classified (the only code
  that reads status codes and ``Content-Range``), and the zip-magic check.
- ``retry``: the retry rule (progress resets the count; a stalled trickle is no progress).
- ``result``: the interface, what every transfer returns (:class:`Fetched`, with the
  :class:`~medimeta_cli.install.commit.Proof` of its check) and the context it runs in.
- ``whole``, ``segmented`` (with ``slices`` and ``connections``): a whole archive in one
  stream, or over several connections.
- ``zipdir``: a remote archive's central directory, and local headers checked against it.
- ``ranged`` and ``members``: the hdf5 layout's members by range requests.
- ``streamed``: every member installed while the archive downloads.
"""

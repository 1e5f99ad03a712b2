"""The Zenodo source: the record's manifest and polite HTTP access to it.

A second source (a mirror, S3) would plug in here."""

"""Installing: zip safety, the installer and its one commit, and ``--from`` folders."""

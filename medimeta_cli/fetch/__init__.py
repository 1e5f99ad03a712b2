"""Fetching archives: transfers of whole archives, slices, members, or streams."""

"""The bundled catalog of MedIMeta: datasets, tasks, domains, citations."""

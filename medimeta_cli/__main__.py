"""Allow ``python -m medimeta_cli`` to behave exactly like the ``medimeta`` script."""

from medimeta_cli.cli.app import main

if __name__ == "__main__":
    main()

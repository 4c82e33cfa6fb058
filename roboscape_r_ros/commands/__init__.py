"""One module per `roboscape-r` command: its typed config and its run function (cli.COMMANDS lists them)."""

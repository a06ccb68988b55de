"""What a caller of PanDA mesh services needs: channels with its bearer token attached
(`channels`) and where that token comes from (`credentials`). Nothing here touches a database,
so the pilot and the command line import only this half of the runtime."""

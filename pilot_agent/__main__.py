"""`python -m pilot_agent --queue Q`."""

from pilot_agent.cli import main

raise SystemExit(main())

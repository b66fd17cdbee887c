from efsqlite.cli import main

raise SystemExit(main())

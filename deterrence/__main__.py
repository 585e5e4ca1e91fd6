from deterrence.cli import main

raise SystemExit(main())

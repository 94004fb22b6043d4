from hotreload.cli import main

raise SystemExit(main())

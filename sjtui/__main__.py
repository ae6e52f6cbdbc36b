from sjtui.cli import main

raise SystemExit(main())

from xeontl.cli import main

raise SystemExit(main())

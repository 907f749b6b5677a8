from ssdq.cli.main import main

raise SystemExit(main())

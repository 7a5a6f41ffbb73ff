from mis_app.cli import main

raise SystemExit(main())

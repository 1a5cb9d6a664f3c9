from hepinfer.cli import main

raise SystemExit(main())

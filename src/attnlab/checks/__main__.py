from attnlab.checks import main

raise SystemExit(main())

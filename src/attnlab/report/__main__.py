from attnlab.report.cli import main

raise SystemExit(main())

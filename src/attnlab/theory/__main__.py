from attnlab.theory import main

raise SystemExit(main())

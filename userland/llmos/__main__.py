from llmos.cli import main

raise SystemExit(main())

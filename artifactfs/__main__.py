from artifactfs.cli import main

raise SystemExit(main())

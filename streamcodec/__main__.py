from streamcodec.cli import main

raise SystemExit(main())

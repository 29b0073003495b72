from defectrt.cli import main

raise SystemExit(main())

//! Shot lists (YAML and CSV) parsed into shots whose every value keeps its position.

"""Jobs, schedules, sensors and automation conditions."""

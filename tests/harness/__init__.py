"""What every kind of test shares: waiting with a deadline, skip-or-fail, starting MIS."""

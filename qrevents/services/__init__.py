"""Business rules: each public function is one transaction (change + event log)."""

"""nginx-format error log and the access log writer."""

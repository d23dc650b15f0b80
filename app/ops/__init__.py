"""Operations: body limits, metrics, structured logs, request ids, offline docs; `install_ops` wires them."""

"""SIP monitoring: message layer, transports, digest auth and the sip_* check types."""

"""groupcast: real-time group fan-out for Django, on Channels and Daphne."""

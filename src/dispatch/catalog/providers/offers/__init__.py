"""The Applifting offers microservice: registered products and their offers."""

"""Payment providers behind one interface (``billing.providers.base.Provider``): Stripe,
Razorpay, PayPal through their official SDKs, and ``mock``, the dev/test provider."""

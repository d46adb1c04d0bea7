// evy/register is required for its side effect (patching before the app loads): it exports nothing.
export {};

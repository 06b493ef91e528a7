// jsdom has no scrolling; the router scrolls to the top on navigation.
window.scrollTo = () => undefined;

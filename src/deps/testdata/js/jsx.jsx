import React from 'react';
const Lazy = React.lazy(() => import('./Page'));
export default function App() {
  return <div className="x">{/* import hidden from './jsx-comment' */}<Lazy /></div>;
}
const m = require(
  './multiline-require'
);

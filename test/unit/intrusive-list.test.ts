import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IntrusiveList, type ListLinks } from '../../src/core/intrusive-list.ts';

interface Item extends ListLinks<Item> { readonly name: string }
const item = (name: string): Item => ({ name, prev: undefined, next: undefined, isLinked: false });
const names = (list: IntrusiveList<Item>): string[] => [...list].map((i) => i.name);

test('push appends once, remove unlinks from anywhere, clear empties', () => {
  const list = new IntrusiveList<Item>();
  const [a, b, c] = [item('a'), item('b'), item('c')];
  list.push(a);
  list.push(b);
  list.push(c);
  list.push(b);
  assert.deepEqual(names(list), ['a', 'b', 'c']);
  assert.equal(list.size, 3);
  assert.equal(list.remove(b), true);
  assert.equal(list.remove(b), false);
  assert.deepEqual(names(list), ['a', 'c']);
  assert.equal(b.isLinked, false);
  assert.equal(list.remove(a), true);
  assert.equal([...list][0], c);
  list.push(a);
  assert.deepEqual(names(list), ['c', 'a']);
  list.clear();
  assert.deepEqual(names(list), []);
  assert.equal(list.size, 0);
  assert.equal(c.isLinked || a.isLinked, false);
});

test('a walk skips values removed before it reaches them and reaches values appended meanwhile', () => {
  const list = new IntrusiveList<Item>();
  const [a, b, c, d] = [item('a'), item('b'), item('c'), item('d')];
  for (const i of [a, b, c]) list.push(i);
  list.startWalk();
  const seen: string[] = [];
  seen.push((list.step() as Item).name);
  list.remove(b); // the value the walk visits next
  list.push(d);
  for (let i = list.step(); i !== undefined; i = list.step()) {
    seen.push(i.name);
    if (i === c) list.remove(c); // the current one
  }
  assert.deepEqual(seen, ['a', 'c', 'd']);
  assert.deepEqual(names(list), ['a', 'd']);
});
